"""Entry points of the fedlearn Flower App; the implementation lives in fedlearn.flower."""
