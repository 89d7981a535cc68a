"""`edge-sent score`: large files into resumable output shards, in this process (`run`) or on Ray (`on_ray`), under one
job identity (`job`)."""
