"""A gallery index for person search: detections and embeddings of images or video, extracted
once (in parallel, resumable) and searched with FAISS. Commands: :mod:`stl_search.index.cli`;
format: :mod:`stl_search.index.shards`; docs/index.md."""
