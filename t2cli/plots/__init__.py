"""Figures of experts, training runs, routing and evaluations (the optional `t2cli[plots]` extra).

Each `plot_*` function takes plain records, writes one PNG and returns the data it drew, so a test
(or a notebook) can check the numbers behind the picture. matplotlib is imported only when drawing.
"""
