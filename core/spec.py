"""What a build or a training is: frozen specs that travel as files, and the CLI generated from them.

:class:`BuildSpec` holds every choice of ``python -m core build`` (source, scheme, catalogue,
survey and band, conflict policy, exclusions, :class:`~core.prepare.preprocessing.PreprocessConfig`,
:class:`~core.prepare.quality.QualityThresholds`, split); :class:`TrainSpec` every choice of
``python -m core train``; :class:`ScrapeSpec`, :class:`FetchSpec` and :class:`ImportSpec` those of
the Data page's commands.

Each field is written once, here (or in the nested config's module): its type, its default and,
in its metadata, its help and flag name. From them come

- the command's flags (:func:`add_spec_options`, :func:`spec_from_args`): ``--crop`` exists
  because ``PreprocessConfig.crop`` does, with its type, choices and default;
- the command line that rebuilds a spec (:func:`spec_argv`, ``spec.to_argv()``);
- the JSON file a dashboard job runs from (:func:`write_spec_file`; ``python -m core build
  --spec FILE`` reads it back with :func:`read_spec_file`, as hostile input: size-checked, typed,
  range-checked, unknown keys refused).

Importing this module is cheap (no numpy, no pandas): the nested configs of a build are imported
when a build spec is made or its flags are generated, in one place (:func:`_build_parts`).
"""
Spec = typing.Union[BuildSpec, TrainSpec, ScrapeSpec, FetchSpec, ImportSpec]
#: Every kind of spec, by the command that runs it.
SPEC_KINDS: dict[str, type] = {cls.kind: cls for cls in (BuildSpec, TrainSpec, ScrapeSpec, FetchSpec, ImportSpec)}

