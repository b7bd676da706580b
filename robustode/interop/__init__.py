"""Other projects' formats in and out: RobustBench's checkpoints and model-info files."""
