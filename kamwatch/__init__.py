"""kamwatch: the command line above the services (`services/`) and the development tools (`kamwatch.dev`)."""
