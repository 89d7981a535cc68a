"""`edge-sent eval --report`: the evaluation (`evaluation`), rendered as one self-contained HTML page (`html`)
with inline SVG figures (`svg`)."""
