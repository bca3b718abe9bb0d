"""What a person reads at the end of a run: short summaries built from the stages' own outputs."""
