"""Vision-language models: images in chats, through transformers' own classes (`AutoModelForImageTextToText`,
`AutoProcessor`, the model's chat template), never a vision stack of our own.

    families.py   one record per supported family: where its vision tower, projector and language model sit
    processor.py  a VLM's processor from a folder or cached hub id
    qwen2_vl.py   Qwen2-VL's processor for pictures alone, where torchvision (its video half) is missing
    adapt.py      what is frozen and what trains (the `vision:` block)
    collate.py    conversations with images -> the processor's batch, labels on assistant tokens only
    objective.py  SFT on image chats (the shared loop's objective)
    pairs.py      preference pairs with pictures -> DPO's batches (chosen and rejected rows, same pictures)
    generate.py   greedy answers to image chats (held-out exact match, the merge check)
"""
