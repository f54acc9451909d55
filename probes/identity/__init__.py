"""The identity probe: who does the model say it is, and does it reuse a parent's self-description?

``probe`` plans and analyses, ``claims`` extracts name/organisation claims from answers,
``ngrams`` measures verbatim reuse, ``render`` writes the report section and figure, and
``data/identity_questions.jsonl`` is the shipped question bank.
"""
