"""Your own database: `sources:` mappings turned into views in mlkit's state schema, and
`mlkit sources check`."""
