"""Benchmarks of docs/API.md §8.2 that reproduce the paper: ``quality`` (Table 1,
Figures 5-6) and ``fewshot`` (Table 2). Each writes Markdown + JSON + PNG
reports stating the command and the hardware; progress goes to a callback."""
