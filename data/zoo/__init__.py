"""The zoo format: table schemas, specs, the zoo directory store and the path policy for directories a
user names."""
