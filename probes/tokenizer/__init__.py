"""The tokenizer probe: does the suspect tokenise exactly as its claimed parents?

``probe`` plans and analyses, ``fingerprint`` compares tokenizer files part by part (white
box), ``library`` prepares the library of reference tokenizers, ``render`` writes the report
section, and ``data/tokenizer_strings.jsonl`` holds the black-box diagnostic strings.
"""
