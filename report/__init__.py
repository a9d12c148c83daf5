"""The paper: `python -m report` renders build/report.{md,tex,pdf} from build/summary.json.

Modules: load (read and check the summary), findings (the sentences the numbers support),
figures (one function per figure), formats (escaping and number filters), render (Jinja
environments, context, the whole render), latex (the reproducible PDF build), style (colours
and labels shared by figures and templates).
"""
