"""The pets flow (Motia's "build your first app" background jobs): a pet API with soft deletes,
a feeding-reminder job on every new pet, and a nightly reaper that purges deleted pets."""
