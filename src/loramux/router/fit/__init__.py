"""What only fitting and evaluating a router uses; nothing here runs per request.

`data` (labelled JSONL), `calibration` (fit the head and choose thresholds on out-of-fold
predictions), `thresholds` (the threshold search), `baseline` (fit the baseline router's one
threshold), `evaluation` and `plots` (reports and charts). `loramux router fit|eval` and the
benchmarks import these; the serving path imports `router/` alone.
"""
