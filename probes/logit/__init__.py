"""The logit-interpolation probe: do the suspect's teacher-forced log-probs sit between the parents'?

``probe`` plans and analyses (the steps of ``analyze`` are named methods), ``interpolation`` is
the mathematics (sufficient statistics, fits, the cross-validated test), ``align`` lines records
up by token id, ``verdict`` is the documented decision rule, ``render`` writes the report
section and figure, and ``data/corpus.jsonl`` is the shipped corpus.
"""
