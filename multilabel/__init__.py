"""The parts the scripts share, each with one job (the scripts themselves still never call one another):

    files.py       every file the scripts exchange: one reader and one writer each, one strictness (no torch)
    encoder.py     the saved-model convention: load, tokenize, batch by length, score; save; INT8 export
    lengths.py     how long texts are, and how they are read (truncation, windows)
    tables.py      your own tables: CSV, TSV, JSONL, Parquet, one text a line
    corpus.py      a corpus a chunk at a time: its rows (bad ones carried), the output streamed, resumed, sharded
    outputs.py     what a script writes: checked against what it reads, before any work, and locked for the run
    losses.py      the training losses, one table that bert_model.py's options are made from
    checkpoint.py  where a training run is: checkpoint, resume (exact or refused), disk room, stop signals
    report.py      the results of a run: metrics, thresholds tuned on dev, the table, plot and model card
    device.py      the device, the precision and torchrun's ranks; the hardware a run records
"""
