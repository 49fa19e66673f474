"""Search strategies: what a round plans, separate from how its trials run (sklearn's
`_run_search(evaluate_candidates)` idea). A strategy looks at the folded run state and
returns the next round's plan: its space and every trial it will run (`TrialSpec`s,
recorded in the log before any trial starts).

- `random_zoom`: random trials; each later round zooms on the best of the one before.
"""
