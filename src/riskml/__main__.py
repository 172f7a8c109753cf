from riskml.cli import app

app()
