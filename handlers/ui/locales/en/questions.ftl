# Texts of questions: /ask.

questions-ask-usage = Ask after the command: <code>/ask what is a black hole?</code>
cmd_ask = Ask a question (in groups: without a mention)
