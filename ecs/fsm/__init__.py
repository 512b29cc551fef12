"""
State machines: YAML tables (`table`, `nodes`), the Automat machines built from
them (`build`, `machine`), their drawing and checks (`draw`), the partition
sequence (`sequence`) and the JSON views the GUI draws (`systems`).
"""
