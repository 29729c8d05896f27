"""Running the lab as a course: grading, release, cluster executors."""
