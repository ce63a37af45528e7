"""The parts the scripts share, each with one job (the scripts never call one another; tune.py reads only the
declarations of bert_model.py's options, its parser):

    files.py       every file the scripts exchange: one reader and one writer each, one strictness (no torch)
    encoder.py     the saved-model convention: load, tokenize, batch by length, score; save; INT8 export
    lengths.py     how long texts are, and how they are read (truncation, windows)
    tables.py      your own tables: CSV, TSV, JSONL, Parquet, one text a line
    corpus.py      a corpus a chunk at a time: its rows (bad ones carried), the output streamed, resumed, sharded
    outputs.py     what a script writes: checked against what it reads, before any work, and locked for the run
    identity.py    what a run is, and which runs are seeds of one experiment (resume, grouping, reuse, merge)
    decide.py      the one decision rule (score > threshold) and its precision, recall and F1
    options.py     every numeric option's range: checked when parsed, stated in --help
    space.py       tune.py's search space, made from bert_model.py's own parser
    shared_study.py  a study that workers on many nodes share through files: the journal, leases, the pruner
    losses.py      the training losses, one table that bert_model.py's options are made from
    checkpoint.py  where a training run is: checkpoint, resume (exact or refused), disk room, stop signals
    report.py      the results of a run: metrics, thresholds tuned on dev, the table, plot and model card
    device.py      the device, the precision and torchrun's ranks; the hardware a run records
"""
