"""`tunesmith eval`: measure a fine-tune on its task and what it cost in general ability.

    run_eval.py       the command: target + settings -> suites -> eval.json, report.html, the gate
    heldout.py        the task: loss/perplexity and answer quality on the run's held-out split; text perplexity
    benchmarks.py     MMLU, HellaSwag (log-likelihood of choices), GSM8K (generation); benchmark_data.py reads them
    loglik.py         batched log-likelihood of continuations; generate.py batched greedy generation with stops
    textmetrics.py    exact / normalized match, ROUGE-L, GSM8K number extraction
    forgetting.py     before-vs-after deltas and the max-drop gate
    judge.py          MT-Bench-style LLM-as-judge over an OpenAI-compatible endpoint
"""
