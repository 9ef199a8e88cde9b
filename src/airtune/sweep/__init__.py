"""airtune.sweep: grids of configs x seeds, run in parallel or through submitit, resumably."""
