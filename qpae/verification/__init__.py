"""Speaker verification: enrolment, trials, cosine scoring with score normalisation, EER and minDCF."""
