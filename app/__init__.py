"""The Streamlit app: main.py (entry), views/ (one thin file per page), resources (cached
models, indexes and catalog reads), and the pages' logic in plain modules the tests call:
map_layers, group_separation, dataset_stats, retrieval, results_view, paper_view.
"""
