"""Quality and speed benchmarks that write JSON + markdown + plots (`python -m benchmarks.NAME`)."""
