"""Shipping a bundle: ONNX export with a parity check, inference engines (torch / ONNX), and the
HTTP service behind ``headstart serve``."""
