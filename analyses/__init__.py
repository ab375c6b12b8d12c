"""The science: baselines, tasks, experiments, metrics, figures and the command line."""
