"""Cached loaders between the pages and ``core``: every table, image and model a page shows comes
through here.

- :mod:`ui.services.sources`: the sources under the data folder, their kind (:mod:`core.acquire.sources`),
  class schemes;
- :mod:`ui.services.catalogue`: a source's catalogue with labels, counts, conflicts, type strings;
- :mod:`ui.services.preview`: quality metrics and the builder's selection for the Preprocessing preview;
- :mod:`ui.services.pictures`: images for the screen, uploads, a preprocessing's steps;
- :mod:`ui.services.builds`: built datasets, their manifests and members;
- :mod:`ui.services.results`: runs, their models, comparisons and predictions.

Tables are cached with ``st.cache_data`` keyed by the source folder and a fingerprint of its files
(:mod:`ui.services.keys`), so a fetch or import that changes them shows up without a restart; Keras
models with ``st.cache_resource``. What the user chose (session state, widgets) is :mod:`ui.state`'s.
"""
