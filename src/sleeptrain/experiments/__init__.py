"""Experiment tooling: `compare` (arms x seeds at one budget), `sweep`, `report` (paired statistics), `plot`."""
