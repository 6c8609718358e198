"""What is stored, and the one way to read and write each kind of it.

SF-XL names: names (one name), name_pattern (its SQL), name_source (folders and lists),
name_table (the one bulk parser), name_cache. The DuckDB catalog: catalog, catalog_partition,
app_queries (the app's SQL), ingest (with ingest_stages, its SQL, and dataset_layout),
map_views (the Map page's first view, stored at ingest), results, sync. Run folders: runs (also
the claims' verdict words). Serving files beside an index: serving. The paper's tables: paper.
The synthetic city: synthetic/ (scene, city with buildings and props, plan, render with facade
and conditions, writer).
"""
