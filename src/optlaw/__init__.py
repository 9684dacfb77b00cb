"""optlaw: how does the choice of optimizer change the scaling law?

Stages live in sub-packages, each importing only from stages before it:
shared -> models -> data -> optim -> train -> sweep -> fit -> report -> proxy -> entry
(docs/design.md; tests/test_architecture.py checks it). The entry layer (``optlaw.entry``)
holds every command. The run record (``records.py``) is the contract between training and fitting.
"""

__version__ = "0.1.0"
