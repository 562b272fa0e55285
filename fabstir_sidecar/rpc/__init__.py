"""The request/response layer: frames, caps, deadlines, errors."""
