"""The built-in rule pack: Sigma YAML files, loaded by `monitor.sigma.load.builtin_paths()`."""
