"""The paper: `python -m report` renders build/report.{md,tex,pdf} from build/summary.json.

The summary is the only source of numbers and judgments: it is read as minima.schema's models,
whose methods find facts (which runs converged, a measure's correlation row, an optimizer's
aggregate: selections, never statistics). This package only formats them, and imports nothing
that needs torch. Modules: prose (the sentences), tables (the table rows), figures (one function
per figure, their rc parameters and their build), formats and escape (escaping and number
filters), render (Jinja environments, context, the whole render), latex (the reproducible PDF
build), style (labels, colours and the order of things, shared by figures and templates), export
(the flat CSV files).
"""
