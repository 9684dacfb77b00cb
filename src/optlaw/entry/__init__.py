"""The entry layer: command line, point dispatch, run identity and the demo.

It sits above every stage (docs/design.md); nothing under ``src/optlaw`` imports it.
"""
