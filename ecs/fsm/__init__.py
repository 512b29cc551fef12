"""State machines: YAML tables (`table`), the machines built from them (`machine`), the partition sequence (`sequence`) and the JSON views the GUI draws (`systems`)."""
