"""The parts the scripts share, each with one job (the scripts themselves still never call one another):

    files.py       every file the scripts exchange: one reader and one writer each, one strictness (no torch)
    model.py       the saved-model convention: load, tokenize, batch by length, score; save; INT8 export
    losses.py      the training losses, one table that bert_model.py's options are made from
    checkpoint.py  where a training run is: checkpoint, resume (exact or refused), disk room, stop signals
    report.py      the results of a run: metrics, thresholds tuned on dev, the table, plot and model card
"""
