"""`tunesmith eval`: measure a fine-tune on its task and what it cost in general ability.

    run_eval.py        the command: target + settings -> suites -> eval.json, eval_samples.jsonl, report.html, gate
    heldout.py         the task: loss/perplexity and answer quality on the run's held-out split; text perplexity
    benchmarks/        one module per benchmark (mmlu, hellaswag, gsm8k, mtbench), registered in its __init__;
                       multiple_choice.py scores choices with one pass per context (shared few-shot prefix cached,
                       head at scored positions)
    loglik.py          the per-pair scorer that falls back to; generate.py greedy generation
    textmetrics.py     exact / normalized match, ROUGE-L, GSM8K number extraction
    stats.py           standard errors, 95% intervals, paired change (Tango's interval, McNemar), significance
    forgetting.py      before-vs-after deltas (paired, in points), their wording and colour, the max-drop gate
    samples.py         eval_samples.jsonl and the worst regressions; report_sections.py their report views
    judge.py           LLM-as-judge over an OpenAI-compatible endpoint
"""
