"""Sweeps: expand a grid, give every point a stable run id, launch what is not finished.

``grid`` expands configs/sweep/<name>.yaml; ``manifest`` writes <sweep_dir>/manifest.json;
``claims`` guarantees one owner per point; ``state`` reads records and claims;
``local`` and ``slurm`` launch; ``job`` runs one point (also from sbatch templates).
"""
