"""Experiments: a paper table or figure as a set of kdjax runs (rows x seeds), run one after another or launched on a
cluster, then aggregated into the paper's table (mean +- std over seeds, the paper's own numbers beside, paired
significance tests) and figure.

    python -m kdjax.experiment --config=configs/experiments/<name>.py --workdir=DIR [-- --config.KEY=VALUE ...]

An experiment file (configs/experiments/) names a base config, its rows (variants and overrides), the seeds, the
report metrics that fill the table's columns, the paper's numbers and the comparisons to test. `spec` reads it,
`runner` runs (or prints the launch commands of) the runs not yet finished, `aggregate` writes the table and figure.
"""
