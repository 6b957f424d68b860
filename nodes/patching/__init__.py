"""What the nodes put into a ComfyUI model: FIS's block patches and wrappers, FPS's attention override, the
per-call and per-run state they share, and sequence-parallel (Raylight) support."""
