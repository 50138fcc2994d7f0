// Sends the SAML message on to the service provider at once; without
// JavaScript the button does.
document.getElementById('saml-post').submit();
