"""What only fitting and evaluating a router uses; nothing here runs per request.

`data` (labelled JSONL), `calibration` (fit the head and choose thresholds on out-of-fold
predictions), `resample` (out-of-fold evidence and the repeated-split check that sets the
calibration target and the decision), `thresholds` (the threshold search), `baseline` (fit the
baseline router's one threshold), `evaluation`, `curve` and `plots` (reports, the
precision-coverage curve, charts), `refit` (labelled data from the decision log, refit into a
new router version). `loramux router fit|eval` and the
benchmarks import these; the serving path imports `router/` alone.
"""
