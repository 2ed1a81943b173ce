"""data_builders: labelled normal / corrupted / mismatched / text-interference image-QA data for rlkit.

    python -m data_builders build --config recipes/tiny/data.yaml --out data/tiny

A package of its own: it imports nothing from rlkit. Training and evaluation read the result through
``data_builders.contract`` (``load_built``, ``validate``, ``ABSTAIN_TEXT``). Docs: ``docs/data.md``.
"""

__version__ = "0.1.0"
