"""The CosPlace method itself (torch, torchvision, numpy, faiss; no Streamlit, no DuckDB).

One module per concept, each the only definition of it: geo (UTM, one zone per dataset),
partition (paper Eq. 1-2), model, heads, images, descriptors, index, recall (positives and
recall@N), files (every whole-file write), errors (user mistakes as one sentence, and the
wrapper every command line runs in: its --debug and its log lines).
"""
