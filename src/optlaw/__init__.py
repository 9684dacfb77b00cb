"""optlaw: how does the choice of optimizer change the scaling law?

Stages live in sub-packages, each importing only from stages before it:
models -> data -> optim -> train -> sweep -> fit -> report -> proxy.
The run record (``records.py``) is the contract between training and fitting.
"""

__version__ = "0.1.0"
