"""What the schedule view asks the ComfyUI server: the HTTP routes and the answers behind them."""
