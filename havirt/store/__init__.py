"""What havirt keeps: config.yaml, var/ (state, lock), conf/ (definitions), files written whole and read strictly."""
