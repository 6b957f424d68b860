"""The node classes an artist sees in ComfyUI: widgets, tooltips, and the call into the patchers."""
