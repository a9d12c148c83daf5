"""The paper: `python -m report` renders build/report.{md,tex,pdf} from build/summary.json.

The summary (schema 2, minima.schema) is the only source of numbers and judgments; this package
only formats it, and imports nothing that needs torch. Modules: load (read and validate the
summary), facts (look facts up: selections, never statistics), prose (the sentences), tables
(the table rows), figures (one function per figure, their style and their build), formats and
escape (escaping and number filters), render (Jinja environments, context, the whole render),
latex (the reproducible PDF build), style (colours and labels shared by figures and templates).
"""
