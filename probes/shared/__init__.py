"""What more than one probe uses, in one place: the shipped corpus (``corpus.py``), records
aligned by token id and full mode's compact storage (``align.py``), and the white-box comparison
of tokenizer files (``tokenizer_files.py``). Probes import these and the harness kernel, never
another probe's folder (``tests/test_import_graph.py`` checks it)."""
