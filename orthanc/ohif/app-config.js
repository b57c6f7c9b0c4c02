/** brainxai: OHIF viewer served by Orthanc (ServeFolders, /ohif/) next to its DICOMweb
 * (/dicom-web/) on the same origin, so no CORS. Copied over OHIF's dist/app-config.js by
 * scripts/setup_viewer.sh. RESEARCH USE ONLY - NOT FOR DIAGNOSIS. */
const dicomweb = window.location.origin + '/dicom-web';

window.config = {
  name: 'brainxai',
  routerBasename: '/ohif',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'Orthanc DICOMweb (brainxai)',
        name: 'orthanc',
        wadoUriRoot: dicomweb,
        qidoRoot: dicomweb,
        wadoRoot: dicomweb,
        qidoSupportsIncludeField: false,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
